"""The one exception type that reaches users as a one-line message instead of a traceback."""


class StyleDropError(ValueError):
    """Bad input or an unusable file. The message names the argument or file and the problem, on one line:
    line breaks that come in with quoted user content (a file name, a JSON key) are shown escaped."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class OutOfRange(StyleDropError):
    """A config field outside its range, named as its command-line option: `--{prefix}{field}` with dashes."""

    def __init__(self, field: str, value, prefix: str = ""):
        self.field, self.value = field, value
        super().__init__(f"--{prefix}{field.replace('_', '-')}: out of range ({value!r})")


def check_ranges(config, checks: dict[str, bool]) -> None:
    """Raise OutOfRange for the first field of `config` whose check failed."""
    for field, ok in checks.items():
        if not ok:
            raise OutOfRange(field, getattr(config, field))
