"""Training Super SloMo: data, the paper's losses, a resumable loop, Ray Train distribution, export."""
