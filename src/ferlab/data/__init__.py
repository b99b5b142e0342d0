"""FER2013 loading, splits, class weights and dataset checks."""
from .dataset import SPLITS, FerData, FerSplit, class_weights
from .fer2013 import load_fer2013

__all__ = ["SPLITS", "FerData", "FerSplit", "class_weights", "load_fer2013"]
