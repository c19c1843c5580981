"""Data: record files with located errors, problem/response sources, the V2V builder, bench loading."""
