"""Dogs vs. Cats: fold training, out-of-fold CV and fold-ensemble submissions."""
