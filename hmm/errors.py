"""The one exception for bad user input, shared by every layer of beliefgeo.

It subclasses ValueError (the contract for HMM validation) and is what the CLI turns into exit
code 2 with a single line on stderr; any other exception is an unexpected failure (exit 1).
"""


class InvalidInput(ValueError):
    """Input a person supplied is wrong; the message says what and how to fix it."""
