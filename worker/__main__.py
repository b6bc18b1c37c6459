"""`python -m worker`: run one worker process until SIGTERM.

The encoding processes (spawned) re-import the parent's main module unless it is a package's
`__main__`; started this way they import LAME and numpy only, not torch and the model code.
"""

import sys

from worker.main import main

sys.exit(main())
