"""Models of speculative pipeline decoding: scenario files, closed form, discrete-event simulator, calibration."""
