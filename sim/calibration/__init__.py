"""Calibration: executor traces -> hardware profile (fit), profile + acceptance -> scenarios, leave-one-
configuration-out validation, and the published implementation's profile. docs/calibration.md."""
