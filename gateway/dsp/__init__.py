"""Real-time signal path of the gateway: ECG/PPG filtering, detection, quality and plausibility checks."""
