"""``palaver demo``: a scripted three-speaker meeting, synthesized and streamed through the real pipeline."""
