"""The machinery every wing stands on: the project folder, CPU kernel paths, devices, optional
packages, atomic files, the paper's scales S and Q, top-k metrics, the profiles, and the run lifecycle
(a run folder: start, lock, reuse, finish, provenance)."""
