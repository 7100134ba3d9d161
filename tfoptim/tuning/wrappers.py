"""The wrappers a search can put around the sampled optimizer, and what is tuned for each.

``sample_optimizer(hp, wrappers=[...])`` chooses one of these per trial (``"none"``: the
optimizer alone) and tunes only the chosen wrapper's own arguments, in a conditional scope,
as it does for optimizers. Names are the snake-cased class names, with the short forms of
:data:`ALIASES`.

Not offered: ``SWA`` (where its average starts is a fraction of the run that interacts with
the schedule; tune it by hand) and ``ScheduleFree`` (it replaces the schedule and wants an
inner rule without momentum: the space already names ``schedule_free_sgd`` and
``keras.schedulefreeadamw``).
"""

import dataclasses

from tfoptim.tuning.space import Prior

#: The wrapper choice that leaves the optimizer as it is.
NONE = "none"


@dataclasses.dataclass(frozen=True)
class WrapperSpec:
    """One nameable wrapper: how to build it around an optimizer and what is tuned.

    ``priors``: the tuned arguments (a ``Prior``, or a list of choices) with the value a
    search starts from in ``defaults``; ``fixed``: arguments set, not tuned (ASAM's
    ``adaptive``). ``calls_per_step``: ``fit`` steps per step of the inner optimizer (SAM's
    ascent and descent are two), so a schedule spans the inner optimizer's steps."""

    name: str
    class_name: str
    priors: tuple = ()
    defaults: tuple = ()
    fixed: tuple = ()
    calls_per_step: int = 1

    @property
    def cls(self):
        import tfoptim.optimizers

        return getattr(tfoptim.optimizers, self.class_name)

    def build(self, optimizer, **kwargs):
        return self.cls(optimizer, **{**kwargs, **dict(self.fixed)})


#: Ranges from each method's paper: SAM's rho searched over {0.01, ..., 0.5} (Foret et al.
#: 2021, with 0.05 the usual choice); ASAM's over {0.1, ..., 2} with 0.5 for CIFAR (Kwon et al.
#: 2021; its neighbourhood is relative to the weights); Lookahead's k in {5, 10} and alpha in
#: {0.5, 0.8} (Zhang et al. 2019); AGC's clipping factor from 0.01 (NFNets' large batches) to
#: 0.16 (Brock et al. 2021, Figure 2 spans 0.01-0.16), and 0.001 below it for small batches.
WRAPPERS = {
    spec.name: spec
    for spec in (
        WrapperSpec("sam", "SAM", priors=(("rho", Prior(0.01, 0.5, "log")),), defaults=(("rho", 0.05),),
                    calls_per_step=2),
        WrapperSpec("asam", "SAM", priors=(("rho", Prior(0.1, 2.0, "log")),), defaults=(("rho", 0.5),),
                    fixed=(("adaptive", True),), calls_per_step=2),
        WrapperSpec("lookahead", "Lookahead",
                    priors=(("sync_period", [5, 6, 10]), ("slow_step_size", Prior(0.5, 0.8))),
                    defaults=(("sync_period", 6), ("slow_step_size", 0.5))),
        WrapperSpec("gradient_centralization", "GradientCentralization"),
        WrapperSpec("adaptive_gradient_clipping", "AdaptiveGradientClipping",
                    priors=(("clip_factor", Prior(1e-3, 0.16, "log")),), defaults=(("clip_factor", 0.01),)),
    )
}

#: Short forms accepted for the names above.
ALIASES = {"gc": "gradient_centralization", "agc": "adaptive_gradient_clipping"}


def wrapper_names():
    """The names ``sample_optimizer(wrappers=...)`` accepts, ``"none"`` first."""
    return [NONE, *sorted(WRAPPERS), *sorted(ALIASES)]


def resolve_wrapper(name):
    """The canonical name of the wrapper ``name`` (``"none"`` for none); ``ValueError`` when unknown."""
    if not isinstance(name, str):
        raise ValueError(f"Wrapper names are strings; received {name!r}.")
    key = name.lower()
    key = ALIASES.get(key, key)
    if key != NONE and key not in WRAPPERS:
        raise ValueError(f"Unknown wrapper {name!r}. Choose from {wrapper_names()}.")
    return key


def calls_per_step(name):
    """``fit`` steps per inner-optimizer step under the wrapper ``name``."""
    return 1 if name == NONE else WRAPPERS[name].calls_per_step
