"""FER2013 loading, splits, class weights, FER+ votes and dataset checks."""
from .dataset import SPLITS, FerData, FerSplit, class_weights
from .fer2013 import load_fer2013
from .ferplus import FerPlusVotes, load_ferplus, split_votes
from .root import resolve_data, resolve_root

__all__ = ["SPLITS", "FerData", "FerSplit", "class_weights", "load_fer2013", "resolve_data", "resolve_root",
           "FerPlusVotes", "load_ferplus", "split_votes"]
