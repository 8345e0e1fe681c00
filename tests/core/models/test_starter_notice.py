"""What the user reads while the starter model runs."""

from __future__ import annotations

import re

from app.core.models.starter import STARTER_NOTICE


def test_the_notice_says_what_the_starter_is_and_where_a_real_model_comes_from() -> None:
    assert "base model" in STARTER_NOTICE and "short and weak" in STARTER_NOTICE
    assert "“Get a model…”" in STARTER_NOTICE  # the label of the button next to it
    assert "import" in STARTER_NOTICE
    assert not re.search(r"\b(will|soon|later|coming)\b", STARTER_NOTICE, re.IGNORECASE)  # nothing promised
