"""Adapters that run the eigensolvers users run today, PyHessian 0.1, hessian-eigenthings
1.0.0a5 and curvlinops 3.0.1 (with SciPy's eigsh), inside the benchmark as solvers
(``pip install -e ".[peers]"``; registered as plugins in the ``hessbench.solvers`` group).

Each adapter runs the peer on a copy of the model, loss and data behind hessbench's torch
operator (:func:`hessbench.peers._counting.torch_parts`; other operators are refused), with
every Hessian-vector product the peer makes charged to ``op.meter`` as hessbench's own
(one full-data product = one data pass), and the peer's name and version at the start of the
result message. Names without a suffix keep the peer's defaults; ``-careful`` names are the
settings a careful user would choose; ``-shifted`` / ``-shimmed`` names are ours, built on the
peer's products. See each module for the settings and the math.
"""

#: the adapters: solver name -> "module:Class" (the entry points in pyproject.toml)
ADAPTERS = {
    "pyhessian-power": "hessbench.peers.pyhessian:PyHessianPower",
    "pyhessian-power-shifted": "hessbench.peers.pyhessian:PyHessianPowerShifted",
    "pyhessian-slq": "hessbench.peers.pyhessian:PyHessianSLQ",
    "pyhessian-slq-shimmed": "hessbench.peers.pyhessian:PyHessianSLQShimmed",
    "eigenthings-lanczos": "hessbench.peers.eigenthings:EigenthingsLanczos",
    "eigenthings-lanczos-careful": "hessbench.peers.eigenthings:EigenthingsLanczosCareful",
    "eigenthings-lanczos-ragged": "hessbench.peers.eigenthings:EigenthingsLanczosRagged",
    "eigenthings-power": "hessbench.peers.eigenthings:EigenthingsPower",
    "eigenthings-power-careful": "hessbench.peers.eigenthings:EigenthingsPowerCareful",
    "curvlinops-eigsh": "hessbench.peers.curvlinops:CurvlinopsEigsh",
    "curvlinops-eigsh-be": "hessbench.peers.curvlinops:CurvlinopsEigshBE",
    "curvlinops-eigsh-careful": "hessbench.peers.curvlinops:CurvlinopsEigshCareful",
}

#: pinned distributions of the ``peers`` extra
PINS = {"PyHessian": "0.1", "hessian-eigenthings": "1.0.0a5",
        "curvlinops-for-pytorch": "3.0.1"}
