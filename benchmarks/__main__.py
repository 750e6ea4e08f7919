"""``python -m benchmarks``: the model suite (segzoo vs smp / torchvision); see benchmarks/suite.py.

The data-pipeline and trainer-overhead benchmarks are ``python -m benchmarks.data_pipeline`` and
``python -m benchmarks.train_step``.
"""

import sys

from benchmarks.suite import main

sys.exit(main())
