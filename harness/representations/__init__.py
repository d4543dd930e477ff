"""Representation-level analyses: did unlearning delete the knowledge, or only hide it?

- `sae`: a TopK sparse autoencoder on one residual layer, trained on the original model (cached).
- `steering`: forward hooks that patch SAE expert codes into a model (restoration, docs/metrics.md §4).
- `cka`: linear CKA between two models' features (docs/metrics.md §9.1, §9.4).
- `probes`: k-NN and logistic-regression probes of a forget-set attribute (docs/metrics.md §9.2, §9.4).
- `features`: hidden states through the backend's cached `HiddenStatesRequest`.
- `logit_lens`: per-layer vocabulary distributions (final norm + LM head) and UnLOK-VQA's white-box
  attack success rules (docs/metrics.md §11).
"""
