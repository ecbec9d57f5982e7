"""Training of the chest-imaging classifiers: a pipeline of typed stages (see trainer.pipeline).

data.py      stage 1: load_dataset(config) -> Dataset
fit.py       stage 2: fit(dataset, config, run_dir) -> FitResult
evaluate.py  stage 3: evaluate(fitted, dataset, config) -> Evaluation
export.py    stage 4: export(fitted, dataset, evaluation, training, config, run_dir) -> ModelCard
"""
