"""Digits classifier: training, model cards and the Seldon Core microservice."""
