"""Work a phase begins before its turn: `plan.Begun`."""

import threading

import pytest

from thresher.pipeline.plan import Begun


def test_begun_work_gives_its_result_or_raises_its_error_to_the_phase_that_waits():
    main = threading.get_ident()
    assert Begun(lambda a, b: (a + b, threading.get_ident() != main), 2, 3).wait() == (5, True)  # on another thread

    def fails():
        raise ValueError("bad row group")

    with pytest.raises(ValueError, match="bad row group"):
        Begun(fails).wait()
