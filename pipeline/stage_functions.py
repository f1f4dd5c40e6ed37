"""Every stage by name, with the function a worker runs for it (`module:function`). Framework-free,
so that the config (validating stage names) and the worker (running stages) both read it and not
each other."""

STAGE_FUNCTIONS = {
    "load": "pipeline.stages.tf_stages:load",
    "export": "pipeline.stages.tf_stages:export",
    "validate": "pipeline.stages.torch_stages:validate",
    "import": "pipeline.stages.torch_stages:import_torch",
    "native": "pipeline.stages.native_stage:native",
    "torch_export": "pipeline.stages.torch_export:torch_export",
    "torch_compile": "pipeline.stages.torch_export:torch_compile",
    "train_check": "pipeline.stages.torch_export:train_check",
    "tf_gradients": "pipeline.stages.gradients_tf:tf_gradients",
    "gradients": "pipeline.stages.gradients_torch:torch_gradients",
    "localize_tf": "pipeline.stages.localize_tf:localize_tf",
    "localize": "pipeline.stages.localize_torch:localize",
    "port_load": "pipeline.stages.port_tf:port_load",
    "port": "pipeline.port.stage:port",
    "tf_training": "pipeline.stages.training_tf:tf_training",
    "training": "pipeline.stages.training_torch:training",
}
