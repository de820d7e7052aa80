"""What the tests and the benchmarks share and users never call: synthetic batches of the losses'
inputs (``synthetic``) and one training step in its eager, compiled and CUDA-graph forms
(``step_variants``)."""
