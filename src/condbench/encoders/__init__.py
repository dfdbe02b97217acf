"""Condition encoders: networks that turn a task's raw conditions (images, poses) into the features a model
conditions on. Their outputs do not depend on the policy, so tasks compute them once per condition and cache them."""
