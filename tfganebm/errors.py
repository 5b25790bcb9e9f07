"""The errors a run ends with: each a one-line message that names the problem and the fix."""


class RunError(ValueError):
  """A problem with the user's input that ends the run with a one-line message."""


class Diverged(RunError):
  """Training produced a non-finite loss, energy or weight; nothing of it was saved."""


class Interrupted(RunError):
  """A stop signal (SIGTERM, Ctrl-C) during training: where it stopped, what was saved and
  how to resume; `exit_code` is 128 + the signal number."""

  def __init__(self, message, exit_code=130):
    super().__init__(message)
    self.exit_code = exit_code
