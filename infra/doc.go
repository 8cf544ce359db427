// Package infra holds the Terraform configuration that deploys nodebatch to
// Google Cloud (the *.tf files in this folder) and, in its tests, the checks
// `make test` runs on it without a terraform binary (see infra/hclcheck).
package infra
