"""Training: FSDP2 session, SFT, GRPO, DPO, checkpoints."""
