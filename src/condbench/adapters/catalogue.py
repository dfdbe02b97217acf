"""Facts about the released networks that are needed without building them (torch-free).

``condbench list``, ``validate`` and the run's missing-files preflight read these without importing torch; the
model modules import them from here, so each fact has one home.
"""
from __future__ import annotations

# X-MDPT's official sizes (``XMDPT_{S,B,L,XL}_2`` in models.py); S, B and L are released.
XMDPT_SIZES = {
    "S": dict(hidden_size=384, depth=12, num_heads=6),
    "B": dict(hidden_size=768, depth=12, num_heads=12),
    "L": dict(hidden_size=1024, depth=24, num_heads=16),
    "XL": dict(hidden_size=1152, depth=28, num_heads=16),
}
# Weights X-MDPT's official file carries for masked training only (the side interpolator and its mask token).
XMDPT_TRAINING_ONLY_PREFIXES = ("sideblocks.", "sideblocks_cross.", "mask_token")
# X-MDPT's state-dict prefixes of everything c depends on (the local head reads the patchified source latent).
XMDPT_EMBEDDER_PREFIXES = ("t_embedder.", "x_embedder.", "pos_embed", "mlp_dino_pose.", "mlp_dino_img.",
                           "conv1d_pose.", "conv1d_global.", "conv1d_local.", "mlp_final.")

# Weights MDSGen's official file carries for masked training only; inference never uses them.
MDSGEN_TRAINING_ONLY_PREFIXES = ("sideblocks.", "mask_token")
# MDSGen's state-dict prefixes of the parts that form c.
MDSGEN_EMBEDDER_PREFIXES = ("t_embedder.", "mlp_feat.", "conv1d_feat.")

# U-ViT's own autoencoder (SD's KL-f8 EMA in the LDM layout), published on Google Drive only.
UVIT_AUTOENCODER_FILE = "autoencoder_kl_ema.pth"
UVIT_AUTOENCODER_URL = "https://drive.google.com/drive/folders/1yo-XhqbPue3rp5P57j6QbA5QZx6KybvP"
