"""The local review page (`styledrop review`)."""
