"""The base of every error a user can cause; the CLI prints its one-line message and exits 2."""


class UserError(ValueError):
    pass
