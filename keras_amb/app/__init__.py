"""The application on top of the keras-amb library: run folders (`runs`),
the two-stage trainer and its callbacks, configs (`config`, `run_config`),
the ablation, export and serving, `review`, and the command line's output
checks and console. The library (`keras_amb.layers`, `models`, `losses`,
`optimizers`, `data`, `explain`, `model_file`, `inference`) imports none of
it (`tests/test_structure.py` checks)."""
