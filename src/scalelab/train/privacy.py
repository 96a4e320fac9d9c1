"""The privacy a DP-FedAvg run spends, counted by Opacus's RDP accountant.

Each round samples a share ``q`` of the clients and adds Gaussian noise of
``noise_multiplier`` times the clip norm to the sum of their clipped updates: one step of
the subsampled Gaussian mechanism at the client level. The accountant composes the
rounds in Rényi differential privacy and converts to (ε, δ). The rounds sample a fixed
number of clients rather than each one independently (Poisson), the usual approximation
in federated practice (McMahan et al. 2018); ε is the Poisson-sampling figure.
"""

from __future__ import annotations

from opacus.accountants import RDPAccountant


def client_level_epsilon(*, noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """ε at ``delta`` after ``rounds`` rounds that each sample ``sample_rate`` of the
    clients and add noise of ``noise_multiplier`` × the clip norm.

    Examples
    --------
    >>> round(client_level_epsilon(noise_multiplier=1.0, sample_rate=0.1, rounds=100, delta=1e-5), 2)
    7.9
    """
    accountant = RDPAccountant()
    # The accountant's history is (noise multiplier, sample rate, steps); one entry
    # stands for every round, as its own step() would record them.
    accountant.history = [(float(noise_multiplier), float(sample_rate), int(rounds))]
    return float(accountant.get_epsilon(delta=float(delta)))
