"""Acting on the cluster: retraining workloads rendered from the monitor's template and read back.

``workload_template`` turns ``spec.retraining.template`` into the object to create for one run;
``workload_outcome`` tells whether that workload finished and reads the candidate it reported.
Both are pure: the controller does the API calls.
"""
