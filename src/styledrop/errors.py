"""The one exception type that reaches users as a one-line message instead of a traceback."""


class StyleDropError(ValueError):
    """Bad input or an unusable file. The message names the argument or file and the problem."""


def check_ranges(config, checks: dict[str, bool]) -> None:
    """Raise for the first field of `config` whose check failed, naming it as its command-line option."""
    for field, ok in checks.items():
        if not ok:
            raise StyleDropError(f"--{field.replace('_', '-')}: out of range ({getattr(config, field)!r})")
