"""The named profiles `ci`, `cpu`, `gpu` and `imagenet`: every knob in one dataclass.

All four share the paper's geometry. A profile scales it by one factor, ``crop / 224``: the
training scales S = 256, 384 and [256, 512] and the test scales Q become ``round(paper * crop / 224)``.
Depth is never scaled (depth is the paper's variable); width may be.

    >>> p = get_profile("ci")
    >>> p.crop, p.S(256), p.S(384), p.jitter
    (32, 37, 55, (37, 73))
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import VGG, build
from .project import NoProject, env_path, find_root
from .scales import PAPER_CROP, PAPER_S_FIXED, PAPER_S_JITTER, TrainScale, to_pixels  # noqa: F401  (the paper's geometry)

# The object's smaller side, a fraction of the image's, drawn uniformly from this range: its box
# then covers 0.36 of the image's area on average, from a few percent to the whole image, as
# ILSVRC-2012's objects do (vggrepro.data.object_sizes; the test measures it on rendered images).
OBJECT_SIDES_LIKE_ILSVRC = (0.15, 1.0)

PAPER_BATCH = 256
PAPER_LR = 1e-2


@dataclass(frozen=True)
class Profile:
    """Every setting a notebook, the trainer or the evaluator reads. Override any with ``replace``."""

    name: str
    device: str  # "cpu", "cuda" or "auto" (CUDA when available)
    data_kind: str  # "synthetic" (generated here) or "imagenet" (a user's ILSVRC-2012 copy)
    data_root: str  # the data set's folder, in the ILSVRC-2012 layout
    num_classes: int
    width: float  # fraction of the paper's channel widths (1.0 = the paper's nets)
    crop: int  # training crop; a multiple of 32 so that fc6 sees a whole crop/32 map
    batch_size: int
    epochs: int  # the most epochs of one training run from scratch
    finetune_epochs: int  # the most epochs of a run that starts from another (S=384, jittered)
    workers: int  # DataLoader workers for the PIL path
    threads: int  # torch CPU threads; fixed so that CPU results are repeatable
    seed: int = 0
    # Chains: how many times the book trains the whole grid, each time from its own training seed
    # (seed, seed + 1, ...), on the same data; a claim's seed term is measured over its chains, and
    # with fewer than three a claim has none and stays undecided (vggrepro.experiments.chains).
    chains: int = 1
    # The first chain's place in the line of chains: the book trains chains first_chain, first_chain
    # + 1, ... (seeds seed + first_chain, ...), so that chains run at different times never repeat
    # a seed and pool in the ledger (vggrepro.experiments.ledger).
    first_chain: int = 0
    # The synthetic data set (ignored for imagenet).
    synth_train_per_class: int = 0
    synth_val_per_class: int = 0
    synth_min_side: tuple[int, int] = (0, 0)  # range of the images' smaller side, in pixels
    # The set's difficulty: the object's smaller side as a fraction of the image's, its rotation
    # (degrees either way), and how far the cluttered background fades toward grey.
    synth_box_fraction: tuple[float, float] = (0.3, 0.9)
    synth_rotation: float = 180.0
    synth_background_fade: float = 0.0
    # Checkpoint every this many steps (and at the end of each epoch).
    checkpoint_every: int = 500
    lr_patience: int = 0  # epochs without val improvement before the lr is divided by 10
    lr_hold_epochs: int = 0  # the first epochs, in which a stall is not a plateau (train.loop.PlateauSchedule)
    # Net A's random init: a std, or "fan-in" for N(0, 2/fan_in) (see models.init_fan_in).
    init_std: float | str = 1e-2
    lr_scale: float = 1.0  # the initial lr is 1e-2 x batch/256 x lr_scale
    dropout: float = 0.5  # on fc6 and fc7 (section 3.1)
    notes: str = ""

    @property
    def chain_seed(self) -> int:
        """The training seed of the run's first chain (``seed + first_chain``): the nets every
        chapter shows and trains by default, so that a chain run at ``first_chain=K`` trains chain
        K's nets only, never chain 0's again (the data stay the profile's seed's)."""
        return self.seed + self.first_chain

    def __post_init__(self):
        self._check_types()
        for knob, least in (
            ("num_classes", 1),
            ("epochs", 1),
            ("finetune_epochs", 1),
            ("chains", 1),
            ("first_chain", 0),
            ("seed", 0),
            ("checkpoint_every", 1),
            ("threads", 1),
            ("workers", 0),
            ("lr_patience", 0),
            ("lr_hold_epochs", 0),
            ("synth_train_per_class", 0),
            ("synth_val_per_class", 0),
        ):
            if getattr(self, knob) < least:
                raise ValueError(f"profile {self.name!r}: {knob}={getattr(self, knob)} must be >= {least}")
        if not self.lr_scale > 0:
            raise ValueError(f"profile {self.name!r}: lr_scale={self.lr_scale} must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"profile {self.name!r}: dropout={self.dropout} must be in [0, 1)")
        if self.crop <= 0 or self.crop % 32:
            raise ValueError(
                f"profile {self.name!r}: crop={self.crop} is not a positive multiple of 32; "
                "fc6 must see a whole crop/32 x crop/32 map (224 gives 7x7). Use 32, 64, ..., 224."
            )
        if not self.width > 0:
            raise ValueError(f"profile {self.name!r}: width={self.width} must be > 0 (1.0 is the paper's net)")
        if self.batch_size <= 0:
            raise ValueError(f"profile {self.name!r}: batch_size={self.batch_size} must be > 0")
        if self.data_kind not in ("synthetic", "imagenet"):
            raise ValueError(f"profile {self.name!r}: data_kind={self.data_kind!r}; use 'synthetic' or 'imagenet'")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"profile {self.name!r}: device={self.device!r}; use 'cpu', 'cuda' or 'auto'")
        smin, smax = self.jitter
        if smin > smax:
            raise ValueError(f"profile {self.name!r}: jitter Smin={smin} > Smax={smax}")
        if min(self.S(s) for s in PAPER_S_FIXED) < self.crop or smin < self.crop:
            raise ValueError(f"profile {self.name!r}: a training scale S is smaller than the crop {self.crop}")

    def _check_types(self) -> None:
        """Each knob of the type its annotation names (``--set crop=abc`` gives a string)."""
        kinds = {"int": (int,), "float": (int, float), "str": (str,)}
        for f in dataclasses.fields(self):
            value, names = getattr(self, f.name), [t.strip() for t in str(f.type).split("|")]
            if names[0].startswith("tuple["):  # a pair of numbers
                parts = names[0][6:-1].split(",")
                ok = (
                    isinstance(value, (tuple, list))
                    and len(value) == len(parts)
                    and all(_of(v, kinds[t.strip()]) for v, t in zip(value, parts))
                )
            else:
                ok = any(_of(value, kinds[t]) for t in names)
            if not ok:
                finite = not isinstance(value, float) or math.isfinite(value)
                kind = f"of type {f.type}" if finite else "a finite number"
                raise ValueError(
                    f"profile {self.name!r}: {f.name}={value!r} is not {kind}; "
                    f"pass e.g. --set {f.name}={getattr(PROFILES.get(self.name, self), f.name, '')!r}"
                )
        if isinstance(self.init_std, str) and self.init_std != "fan-in":
            raise ValueError(f"profile {self.name!r}: init_std={self.init_std!r}; give a positive std or 'fan-in'")

    # -- the paper's geometry, scaled -------------------------------------------------------
    @property
    def factor(self) -> float:
        """How much smaller than the paper this profile's images are (crop / 224)."""
        return self.crop / PAPER_CROP

    def S(self, paper_px: int) -> int:
        """A paper scale (S or Q, in the paper's pixels) in this profile's pixels."""
        return to_pixels(paper_px, self.crop)

    @property
    def jitter(self) -> tuple[int, int]:
        """[Smin, Smax] for scale jittering: the paper's [256, 512], scaled."""
        return (self.S(PAPER_S_JITTER[0]), self.S(PAPER_S_JITTER[1]))

    def test_scales(self, train_S: int | str, multi: bool) -> list[int]:
        """The paper's rule for Q, in paper pixels (sections 4.1 and 4.2), given a train S in the
        paper's notation: :meth:`vggrepro.core.scales.TrainScale.Q`. Scale the result with :meth:`S`."""
        return TrainScale.parse(train_S).Q(multi)

    # -- optimisation -----------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The paper's 1e-2 at batch 256, scaled linearly with the batch (Goyal et al.'s rule)."""
        return PAPER_LR * self.batch_size / PAPER_BATCH * self.lr_scale

    @property
    def data_path(self) -> Path:
        return Path(os.path.expanduser(self.data_root))

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device

        return "cuda" if torch.cuda.is_available() else "cpu"

    def build(self, config: str) -> VGG:
        """Net ``config`` of Table 1 at this profile's width, crop and number of classes, as
        :func:`vggrepro.models.build` makes it (Gaussian init, dropout 0.5 until training sets it)."""
        return build(config, width=self.width, num_classes=self.num_classes, crop=self.crop)

    def replace(self, **overrides) -> Profile:
        """A copy with some knobs changed; unknown knobs are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown profile knob(s) {unknown}; known knobs: {sorted(known)}")
        changed = dataclasses.replace(self, **overrides)
        if "data_root" not in overrides and self.data_root == own_data_root(self):
            # a set made with other knobs (another seed: a replication) goes to a folder of its own
            changed = dataclasses.replace(changed, data_root=own_data_root(changed))
        return changed

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["synth_min_side"] = list(d["synth_min_side"])
        d["synth_box_fraction"] = list(d["synth_box_fraction"])
        return d


def _of(value, types: tuple) -> bool:
    # a float knob must be a finite number: -p width=1e400 reads as inf
    return (
        isinstance(value, types)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and not math.isfinite(value))
    )


#: The knobs a synthetic set is a function of (``vggrepro.data.synth.profile_params`` reads them).
SET_KNOBS = (
    "num_classes",
    "synth_train_per_class",
    "synth_val_per_class",
    "synth_min_side",
    "synth_box_fraction",
    "synth_rotation",
    "synth_background_fade",
    "seed",
)


def own_data_root(profile: Profile) -> str:
    """Where a named synthetic profile keeps the set its knobs make: the profile's own folder for its
    own set (``data/synth-ci``), a folder beside it named by what differs for another
    (``data/synth-ci-seed1`` for ``seed=1``, the documented replication), so that a variant never meets
    the profile's own set and asks for it to be deleted. Other profiles: their ``data_root``."""
    base = PROFILES.get(profile.name)
    if base is None or profile.data_kind != "synthetic" or base.data_kind != "synthetic":
        return profile.data_root
    differ = [k for k in SET_KNOBS if _plain(getattr(profile, k)) != _plain(getattr(base, k))]
    if not differ:
        return base.data_root
    parts = [
        k.removeprefix("synth_") + re.sub(r"[^0-9A-Za-z.-]+", "_", str(_plain(getattr(profile, k)))).strip("_")
        for k in differ
    ]
    return f"{base.data_root}-{'-'.join(parts)}"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def repo_data(name: str) -> str:
    """Generated data lives in the project's data/ folder (git-ignored), or $VGGREPRO_DATA."""
    try:  # an installed copy outside any checkout: the current folder (runs/ then says what to fix)
        root = find_root() or Path.cwd()
    except NoProject:
        root = Path.cwd()
    return str((env_path("VGGREPRO_DATA") or root / "data") / name)


def _imagenet_root() -> str:
    """$VGGREPRO_IMAGENET as given (it keys the imagenet runs), made absolute only when relative."""
    value = os.environ.get("VGGREPRO_IMAGENET") or "~/data/imagenet"
    return value if os.path.isabs(os.path.expanduser(value)) else str(env_path("VGGREPRO_IMAGENET"))


PROFILES: dict[str, Profile] = {
    # CPU, 2 cores: the whole book in minutes. 1/8 of the channels, 32 px crops (S = 37, 55,
    # [37, 73]); 10 synthetic classes; two threads (the machine's two cores): a fixed count, so
    # that results repeat exactly on any machine of this kind (measured: the same weights, bit for
    # bit, run after run; 1.7x one thread's img/s). At this width a fixed init std starves the signal, so net A
    # starts from the fan-in Gaussian, and the lr is 4x the linearly scaled paper value (measured:
    # at 1e-2 x 64/256 a width/8 A stays at chance for 8 epochs).
    # The difficulty is calibrated so that A lands well inside 40-85% top-1 accuracy (issue 3; the
    # measurements are in results/ci_calibration.json): at 32 px an object smaller than half the
    # image is a few pixels wide and learned too slowly, and dropout, a regulariser, only slows nets
    # that underfit in ten epochs (A: 79% top-1 error with it, 70% without, on the same data).
    "ci": Profile(
        name="ci",
        device="cpu",
        data_kind="synthetic",
        data_root=repo_data("synth-ci"),
        num_classes=10,
        width=1 / 8,
        crop=32,
        batch_size=64,
        epochs=10,
        finetune_epochs=2,
        workers=0,
        threads=2,
        synth_train_per_class=300,
        synth_val_per_class=50,
        synth_min_side=(40, 72),
        synth_box_fraction=(0.5, 0.9),
        synth_rotation=30.0,
        synth_background_fade=0.3,
        dropout=0.0,
        checkpoint_every=200,
        lr_patience=2,
        init_std="fan-in",
        lr_scale=4.0,
        notes="CPU, minutes; width/8 nets on the synthetic set at 32 px",
    ),
    # CPU, 2 cores: the evidence scale (issue 18). 64 px crops make fc6 a real 2x2 convolution and
    # give dense evaluation several windows per image (S = 73, 110, [73, 146]); 20 classes.
    # Validation: 20 x 120 = 2,400 images, so that two nets that disagree on a quarter of the
    # images compare with an image-sampling half-width of 1.96 x sqrt(0.25 / 2400) = 2.0 points;
    # the seed term comes on top, measured on each claim's own chains (chapter 4 trains
    # depth_chains = 3 of A, D and A's budget control; every other claim rests on `chains`).
    # The second design (issue 29; results/cpu_calibration.json, scripts/probe_cpu.py), after the
    # first (results/cpu_probe.json, results/cpu_calibration_variants.json) measured its design:
    # - objects sized like ILSVRC-2012's (vggrepro.data.object_sizes), not 50-90% of the side;
    # - every net may train 50 epochs (10 when fine-tuning) under the paper's plateau rule at
    #   patience 2, its first 10 epochs held: on this set D from A stalled at epochs 3-5 and an
    #   unheld schedule cut its lr there (results/cpu_premature_cut.json), as it had cut E's at
    #   the first design; held, E trains as well as D. Measured on seed 0: A, D and E each had
    #   their first cut only after epoch 40, so the 50 epochs, not the rule, end them: these nets
    #   have not converged, which the budget control of the depth claims is there to weigh.
    #   Other seeds did not repeat it: the rule cut chain 1's A at epoch 25 and chain 2's C, D and
    #   E at 22-29 (results/cpu_plateau_cuts-2.json), C and E while their error still fell, and
    #   nets cut early end 4-20 points worse: the seed term of every claim across nets;
    # - no dropout and 4x the scaled lr from fan-in init, as calibrated at the first design (a
    #   width/8 A at 1e-2 x 64/256 stayed at chance; dropout slowed nets that underfit).
    # A net's time on the 2-core machine is in results/cpu_calibration.json (A about 6 minutes,
    # D 7, E 8); results/cpu_budget.json counts the whole book.
    "cpu": Profile(
        name="cpu",
        device="cpu",
        data_kind="synthetic",
        data_root=repo_data("synth-cpu"),
        num_classes=20,
        width=1 / 8,
        crop=64,
        batch_size=64,
        epochs=50,
        finetune_epochs=10,
        workers=0,
        threads=2,
        synth_train_per_class=250,
        synth_val_per_class=120,
        synth_min_side=(80, 144),
        synth_box_fraction=OBJECT_SIDES_LIKE_ILSVRC,
        synth_rotation=30.0,
        synth_background_fade=0.3,
        dropout=0.0,
        checkpoint_every=200,
        lr_patience=2,
        lr_hold_epochs=10,
        init_std="fan-in",
        lr_scale=4.0,
        notes="CPU, 2 cores, hours: width/8 nets on a larger synthetic set at 64 px, objects sized like ILSVRC's",
    ),
    # One GPU: the paper's nets at full width and 224 px on a larger synthetic set.
    "gpu": Profile(
        name="gpu",
        device="auto",
        data_kind="synthetic",
        data_root=repo_data("synth-gpu"),
        num_classes=100,
        width=1.0,
        crop=224,
        batch_size=256,
        epochs=12,
        finetune_epochs=4,
        workers=8,
        threads=8,
        synth_train_per_class=300,
        synth_val_per_class=30,
        synth_min_side=(280, 520),
        synth_box_fraction=OBJECT_SIDES_LIKE_ILSVRC,
        checkpoint_every=500,
        lr_patience=1,
        init_std="fan-in",
        notes="one GPU: about an hour on an H100 (chapter 10 counts it at three rates of D)",
    ),
    # The paper's protocol on ILSVRC-2012 (set data_root or $VGGREPRO_IMAGENET).
    "imagenet": Profile(
        name="imagenet",
        device="auto",
        data_kind="imagenet",
        data_root=_imagenet_root(),
        num_classes=1000,
        width=1.0,
        crop=224,
        batch_size=256,
        epochs=74,
        finetune_epochs=30,
        workers=16,
        threads=16,
        checkpoint_every=2000,
        lr_patience=2,
        notes="ILSVRC-2012, 1..N GPUs under torchrun; the paper's full protocol",
    ),
}

#: The profiles' names, in the order the book and the results page list them (the one list of them).
NAMES: tuple[str, ...] = tuple(PROFILES)
#: The profiles whose data set is generated here (``vggrepro data synth --profile``).
SYNTHETIC: tuple[str, ...] = tuple(n for n, p in PROFILES.items() if p.data_kind == "synthetic")


#: The environment variable through which ``vggrepro book run`` hands profile knobs to every chapter
#: it runs: JSON ``{"<profile>": {"<knob>": value, ...}}``, applied by :func:`get_profile` to that
#: profile (a chapter's parameters cell then need not declare the knob).
OVERRIDES_ENV = "VGGREPRO_PROFILE_SET"


def overrides_from_env(name: str) -> dict:
    """The knobs ``$VGGREPRO_PROFILE_SET`` overrides in profile ``name`` (none when it is unset)."""
    raw = os.environ.get(OVERRIDES_ENV)
    if not raw:
        return {}
    try:
        knobs = json.loads(raw).get(name, {})
    except (ValueError, AttributeError):
        raise ValueError(
            f'${OVERRIDES_ENV}={raw!r} is not JSON of the form {{"ci": {{"width": 0.0625}}}}; '
            "unset it (vggrepro book run sets it for the chapters it runs)"
        ) from None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}  # JSON has no tuples


def get_profile(name: str = "ci", **overrides) -> Profile:
    """The named profile, with any knob overridden: ``get_profile("ci", width=0.0625)``.

    A name also takes the knobs that ``vggrepro book run -p knob=value`` set for the chapters it runs
    (:data:`OVERRIDES_ENV`); ``overrides`` given here win over those.
    """
    if isinstance(name, Profile):
        return name.replace(**overrides) if overrides else name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    p = PROFILES[name]
    overrides = {**overrides_from_env(name), **overrides}
    return p.replace(**overrides) if overrides else p


def knobs() -> set[str]:
    """The names a profile override may set (every field of :class:`Profile` but its name)."""
    return {f.name for f in dataclasses.fields(Profile)} - {"name"}
