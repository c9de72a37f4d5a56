"""Math kernels: each fast path sits beside its step-by-step reference."""
