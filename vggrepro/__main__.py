"""``python -m vggrepro COMMAND ...`` (and ``torchrun ... -m vggrepro train ...``): the ``vggrepro`` command."""

import sys

from .cli.main import main

sys.exit(main())
