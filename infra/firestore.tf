# Firestore Native: the (default) database, because the code opens the
# project's default database, and exactly the composite indexes the code's
# queries need. The queries are declared in shared/store/queries.go; a query
# needs a composite index when it combines an equality filter with an order
# or a range on another field. Equality filters alone are served by merging
# the automatic single-field indexes, and so are queries on one field.
# infra_test.go derives the needed indexes from the declarations and fails
# when this file declares one more or one fewer (indexes cost a write per
# indexed document change).

resource "google_firestore_database" "main" {
  project                 = var.project_id
  name                    = "(default)"
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  concurrency_mode        = "OPTIMISTIC"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"

  depends_on = [google_project_service.api]
}

# store.QueryHistoryByOwner: owner == X order by created_at desc.
resource "google_firestore_index" "batches_by_owner" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION"

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# store.QueryHistoryByState: state == X order by created_at desc.
resource "google_firestore_index" "batches_by_state" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# store.QueryFinishedSinceByOwner (the relay's feed): owner == X and finished_at >= T.
resource "google_firestore_index" "batches_by_owner_finished_asc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION"

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "finished_at"
    order      = "ASCENDING"
  }
}

# store.QueryHistoryByOwnerState: owner == X and state == S order by created_at desc.
resource "google_firestore_index" "batches_by_owner_state_created" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION"

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}
