"""Iterative training with feedback (StyleDrop, section 3.3): generate a pool from an adapter, score it,
select the good images (CLIP, a person, or at random), and train a new adapter on them."""
