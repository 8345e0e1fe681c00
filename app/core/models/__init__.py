"""Models: the starter, synthetic test models, the hub, downloads, fit estimates and the installed list.

huggingface_hub reads its offline switches when first imported, so they are
set here, before any module of this package can import it: the hub is
reachable only through `network.online`, on a user's request.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
