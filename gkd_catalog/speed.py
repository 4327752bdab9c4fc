"""The training speed options by name, and the ``GKD_SPEED`` text that overrides them on a worker.

Standard library only: the service checks a worker's ``GKD_SPEED`` at start-up without torch, and
gkd_core.engine.speed applies the same names. What each option does, and how its default per device
is measured, is in gkd_core/engine/speed.py.
"""

from __future__ import annotations

ATTENTION_CHOICES = ("default", "eager", "flash", "efficient", "cudnn", "math")

# option -> its kind: "bool" (on/off), "int" (a whole number >= 0) or the tuple of choices
SPEED_OPTIONS: dict[str, str | tuple[str, ...]] = {
    "fused_adamw": "bool",
    "attention": ATTENTION_CHOICES,
    "channels_last": "bool",
    "compile": "bool",
    "compile_min_steps": "int",
}

_SWITCH = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


def parse_speed_overrides(text: str) -> dict[str, bool | int | str]:
    """``"name=value,..."`` as a dict of option values.

    Raises:
        ValueError: a part that is not name=value, an unknown name, or a value the option does not take.
    """
    values: dict[str, bool | int | str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or name not in SPEED_OPTIONS:
            raise ValueError(f"GKD_SPEED: {part!r} is not name=value with a name of {sorted(SPEED_OPTIONS)}")
        kind = SPEED_OPTIONS[name]
        if kind == "bool":
            if value.lower() not in _SWITCH:
                raise ValueError(f"GKD_SPEED: {name} takes on/off, got {value!r}")
            values[name] = _SWITCH[value.lower()]
        elif kind == "int":
            if not value.isdigit():
                raise ValueError(f"GKD_SPEED: {name} takes a whole number >= 0, got {value!r}")
            values[name] = int(value)
        else:
            if value not in kind:
                raise ValueError(f"GKD_SPEED: {name} must be one of {kind}, got {value!r}")
            values[name] = value
    return values
