"""The one exception type that reaches users as a one-line message instead of a traceback."""


class StyleDropError(ValueError):
    """Bad input or an unusable file. The message names the argument or file and the problem, on one line:
    line breaks that come in with quoted user content (a file name, a JSON key) are shown escaped."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


def check_ranges(config, checks: dict[str, bool]) -> None:
    """Raise for the first field of `config` whose check failed, naming it as its command-line option."""
    for field, ok in checks.items():
        if not ok:
            raise StyleDropError(f"--{field.replace('_', '-')}: out of range ({getattr(config, field)!r})")
