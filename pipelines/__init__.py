"""Pipeline stages: load images, normalize, build models, train, predict."""
