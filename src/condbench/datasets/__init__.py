"""Dataset readers. Each module reads one dataset's files; importing this package imports none of them.

- :mod:`.digit_pairs`: paired 8x8 digits (same-class source, the target's ink mask as its pose), built in.
- :mod:`.deepfashion`: the PIDM/GFLA DeepFashion split (pairs files, LMDB or PNG images) for pose-guided generation.
- :mod:`.openpose`: OpenPose 18-keypoint files and the coloured-limb skeleton image X-MDPT conditions on.
- :mod:`.prompts`: prompt sets (text, csv, jsonl, COCO captions, PartiPrompts) for text-to-image.
- :mod:`.vggsound`: the VGGSound split csv, its 10 s clips (4 fps frames through decord, 16 kHz audio) and
  precomputed CAVP feature files, for video-to-audio generation.
"""
