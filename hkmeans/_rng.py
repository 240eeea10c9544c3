"""The one place randomness enters: ``random_state`` to a NumPy Generator."""

import numpy as np
from sklearn.utils import check_random_state


def as_generator(random_state) -> np.random.Generator:
    """A ``np.random.Generator`` from None, an int, a Generator or a RandomState.

    A Generator is used as is (and advanced); anything else seeds a new one, so the
    same int always gives the same stream.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    rs = check_random_state(random_state)
    return np.random.default_rng(rs.randint(np.iinfo(np.int32).max))
