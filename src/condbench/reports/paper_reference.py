"""The seed study's own numbers (arXiv 2602.21596), shown beside a run's Table 1 and Table 2 for the same model.

Every number carries the table and row it was read from. Lines refer to the study's text as kept in the
project's shared study folder (``papers/001_*.txt``): Table 1 on lines 36-41, Table 2 on lines 51-61, Table 3
(appendix A.4.3) on lines 197-205, Table B.1 on lines 218-223, Table B.2 on lines 225-230, Table B.3 on
lines 232-246. The thresholds of Table 2's rows did not survive in that text; the mapping of rows to
``tail:0.01`` / ``tail:0.02`` / ``head:5.0`` / ``head:1.0`` is the one in the project's reference notes
(``reference/MODELS.md``), from the dimension counts (448 and 762 of 1,152 removed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

PAPER = "arXiv 2602.21596"


@dataclass(frozen=True)
class Ref:
    """One number of the study and where it stands there."""

    value: float
    source: str


@dataclass(frozen=True)
class PaperRow:
    """A row of the study's Table 2 (or its appendix twins) for one model: the policy it describes in this
    project's grammar (``K`` where the study gives no number), the dimensions it removed, and its metrics."""

    policy: str
    removed: str
    metrics: dict[str, Ref]


@dataclass(frozen=True)
class PaperModel:
    """The study's numbers for one registry model: Table 1 statistics (keys as in a run's analysis:
    ``dim``, ``pr``, ``npr``, ``cosine``, ``cond_cosine``, ``cond_npr``) and Table 2 rows."""

    label: str
    table1: dict[str, Ref] = field(default_factory=dict)
    table2: tuple[PaperRow, ...] = ()
    table2_note: str = ""
    samples: Optional[int] = None  # the sample count behind the study's Table 2 metrics


def _t1(column: str, dim: int, pr: float, npr: float, cosine: float, table: str = "Table 1") -> dict[str, Ref]:
    where = f"{table}, column {column}"
    return {"dim": Ref(dim, where), "pr": Ref(pr, where), "npr": Ref(npr, where), "cosine": Ref(cosine, where)}


def _cond_only(column: str, cosine: float, npr: float, table: str = "Table B.1") -> dict[str, Ref]:
    where = f"{table}, column {column}, rows for y alone"
    return {"cond_cosine": Ref(cosine, where), "cond_npr": Ref(npr, where)}


def _row(policy: str, removed: str, source: str, **metrics: float) -> PaperRow:
    return PaperRow(policy, removed, {k: Ref(v, source) for k, v in metrics.items()})


def _with(row: PaperRow, source: str, **metrics: float) -> PaperRow:
    """``row`` with metrics from another table of the study (Table B.3 adds precision and recall)."""
    return PaperRow(row.policy, row.removed, {**row.metrics, **{k: Ref(v, source) for k, v in metrics.items()}})


T2 = "Table 2"
T3 = "Table 3 (A.4.3)"
B3 = "Table B.3"
IMAGENET_NOTE = ("5,000 samples (5 per class), each model's default sampler, FID/IS by the LightningDiT evaluation "
                 "code (study, appendix A). The study does not give K of its late-step rows.")

MODELS: dict[str, PaperModel] = {
    "dit-xl-2": PaperModel("DiT-XL/2", {**_t1("DiT", 1152, 120.69, 0.1047, 0.9001), **_cond_only("DiT1", 0.7774, 0.7014)}),
    "sit-xl-2": PaperModel("SiT-XL/2", {**_t1("SiT", 1152, 26.25, 0.0228, 0.9852), **_cond_only("SiT1", 0.5436, 0.3743)}),
    "mdt-xl-2": PaperModel("MDT-XL/2", {**_t1("MDT", 1152, 18.45, 0.0160, 0.9905), **_cond_only("MDT1", 0.8540, 0.3675)}),
    "lightningdit-xl-1": PaperModel(
        "LightningDiT-XL/1", {**_t1("LightningDiT", 1152, 23.70, 0.0205, 0.9779), **_cond_only("LightningDiT1", 0.7166, 0.3642)},
        (_with(_row("baseline", "0/1152 (0%)", T3, fid=7.0802, **{"is": 169.8574}, clip_score=30.720), B3,
               precision=0.7928, recall=0.6248),
         _row("tail:τ", "448/1152 (38.94%)", T3, fid=7.0130, **{"is": 166.0569}, clip_score=30.7045),
         _with(_row("tail:τ@t0", "448/1152 (38.94%)", T3, fid=7.0712, **{"is": 169.9164}, clip_score=30.729), B3,
               precision=0.7906, recall=0.6256),
         _with(_row("tail:τ@last:K", "448/1152 (38.94%)", T3, fid=7.0745, **{"is": 169.9236}, clip_score=30.729), B3,
               precision=0.7935, recall=0.6265)),
        IMAGENET_NOTE + " Table 3 gives no threshold: τ removes 448 of 1,152 dimensions, as tail:0.01 does for "
        "REPA; rows in Table 2's order (every step, t0, last steps).", 5000),
    "mg-sit-xl-2": PaperModel(
        "MG (SiT-XL/2)", {**_t1("MG", 1152, 19.98, 0.0173, 0.9934), **_cond_only("MG1", 0.6853, 0.4367)},
        (_with(_row("baseline", "0/1152 (0%)", T3, fid=7.2478, **{"is": 174.5151}, clip_score=30.199), B3,
               precision=0.7842, recall=0.6633),
         _row("tail:τ", "448/1152 (38.94%)", T3, fid=7.2791, **{"is": 170.55}, clip_score=30.140),
         _with(_row("tail:τ@t0", "448/1152 (38.94%)", T3, fid=7.2466, **{"is": 174.5537}, clip_score=30.199), B3,
               precision=0.7854, recall=0.6625),
         _with(_row("tail:τ@last:K", "448/1152 (38.94%)", T3, fid=7.2455, **{"is": 174.3103}, clip_score=30.198), B3,
               precision=0.7898, recall=0.6644)),
        IMAGENET_NOTE + " Table 3 gives no threshold: τ removes 448 of 1,152 dimensions, as tail:0.01 does for "
        "REPA; rows in Table 2's order (every step, t0, last steps).", 5000),
    "repa-sit-xl-2": PaperModel(
        "REPA (SiT-XL/2)",
        # Table 1 gives nPR 1.53% for REPA, Table B.1 1.43%: Table 1's value is shown
        {**_t1("REPA", 1152, 17.67, 0.0153, 0.9946), **_cond_only("REPA1", 0.5194, 0.4160)},
        (_with(_row("baseline", "0/1152 (0%)", T2, fid=7.1694, **{"is": 176.02}, clip_score=29.746), B3,
               precision=0.8032, recall=0.6236),
         _row("tail:0.01", "448/1152 (38.94%)", T2, fid=7.2143, **{"is": 171.99}, clip_score=29.737),
         _with(_row("tail:0.01@t0", "448/1152 (38.94%)", T2, fid=7.1690, **{"is": 175.97}, clip_score=29.807), B3,
               precision=0.7878, recall=0.6252),
         _with(_row("tail:0.01@last:K", "448/1152 (38.94%)", T2, fid=7.1598, **{"is": 175.49}, clip_score=29.805), B3,
               precision=0.8045, recall=0.6381),
         _row("tail:0.02", "762/1152 (66.21%)", T2, fid=9.2202, **{"is": 125.15}, clip_score=29.221),
         _row("head:5.0", "2/1152 (0.20%)", T2, fid=7.8478, **{"is": 164.15}, clip_score=29.555),
         _row("head:1.0", "8/1152 (0.69%)", T2, fid=523.7637, **{"is": 1.95}, clip_score=22.690)),
        IMAGENET_NOTE + " Table 2's rows removing 1,110 and 1,149 dimensions are left out: their thresholds are "
        "not legible in the study's text.", 5000),
    "uvit-h-2": PaperModel("U-ViT-H/2", {"npr": Ref(0.5006, "Table B.1, column UViT2, rows for y + t"),
                                         "cosine": Ref(0.97917, "Table B.1, column UViT2, rows for y + t"),
                                         **_cond_only("UViT2", 0.00165, 0.6352)}),
    "xmdpt-l-2": PaperModel(
        "X-MDPT-L/2", {**_t1("X-MDPT", 1024, 495.75, 0.4842, 0.9998), **_cond_only("X-MDPT-L1", 0.9862, 0.2068, "Table B.2")},
        (_row("baseline", "0%", B3, fid=18.6372, ssim=0.6798, lpips=0.1672, psnr=17.336),
         _row("tail:τ", "40%", B3, fid=18.6692, ssim=0.6792, lpips=0.1675, psnr=17.328)),
        "Table B.3 names neither the threshold nor the schedule of its pruned row, only that it removes 40%."),
    "xmdpt-b-2": PaperModel("X-MDPT-B/2", {"npr": Ref(0.3759, "Table B.2, column X-MDPT-B1, rows for y + t"),
                                           "cosine": Ref(0.99992, "Table B.2, column X-MDPT-B1, rows for y + t"),
                                           **_cond_only("X-MDPT-B1", 0.9909, 0.2975, "Table B.2")}),
    "xmdpt-s-2": PaperModel("X-MDPT-S/2", {"npr": Ref(0.5341, "Table B.2, column X-MDPT-S1, rows for y + t"),
                                           "cosine": Ref(0.9995, "Table B.2, column X-MDPT-S1, rows for y + t"),
                                           **_cond_only("X-MDPT-S1", 0.9492, 0.3751, "Table B.2")}),
    "sd3-medium": PaperModel("SD3.0 (2B)", {"npr": Ref(0.5479, "Table B.2, column SD3.0 (2B)1, rows for y + t"),
                                            "cosine": Ref(0.9962, "Table B.2, column SD3.0 (2B)1, rows for y + t"),
                                            **_cond_only("SD3.0 (2B)1", 0.9949, 0.5239, "Table B.2")}),
    "mdsgen-b-2": PaperModel(
        "MDSGen-B/2", {**_t1("MDSGen", 768, 104.22, 0.1357, 0.9999), **_cond_only("MDSGen1", 0.9918, 0.0998, "Table B.2")}),
}

# the study's tasks; any other task (digits, a plug-in) measures something the study did not
PAPER_TASKS = {"imagenet", "pose", "audio", "text"}
NOT_COMPARABLE = {
    "digits": "digits is condbench's built-in task (scikit-learn's 8×8 digits, a 96-d DiT): its FID and IS are "
              "computed in the feature space of the digits CNN, not Inception's, so no number here is comparable "
              "to the study's.",
}


def paper_model(model: str) -> Optional[PaperModel]:
    """The study's numbers for a registry model name, or None where the study has none."""
    return MODELS.get(model)


def comparability_note(task: str) -> Optional[str]:
    """What to say about comparing a task's numbers with the study's, or None for the study's own tasks."""
    if task in NOT_COMPARABLE:
        return NOT_COMPARABLE[task]
    if task not in PAPER_TASKS:
        return f"{task} is not one of the study's tasks: its numbers are not comparable to the study's."
    return None
