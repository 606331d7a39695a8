"""What the console shows: progress bars only where someone watches them. Piped into a file a bar is a trail of
`\r` frames, and the log lines (every `log_every` steps, each evaluation) say the same in plain lines."""
from __future__ import annotations

import sys


def console_is_terminal() -> bool:
    return sys.stderr.isatty()  # where tqdm draws
