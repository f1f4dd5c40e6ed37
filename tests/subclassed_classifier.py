"""A subclassed keras.Model for tests/build_models.py; the tests give this file as custom_objects."""

import keras


@keras.saving.register_keras_serializable(package="tests")
class Classifier(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(6, 3, padding="same", activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3)

    def call(self, image):
        return self.head(self.pool(self.conv(image)))
