"""The one exception type that reaches users as a one-line message instead of a traceback."""


class StyleDropError(ValueError):
    """Bad input or an unusable file. The message names the argument or file and the problem."""
