"""Training and evaluation: data over feature stores, the Lightning module, cross-validation,
metrics and reports. Depends on corpora, features and models; nothing below imports it."""
