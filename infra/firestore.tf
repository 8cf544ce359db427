# Firestore Native: the (default) database, because the code opens the
# project's default database. Composite indexes for the queries that filter
# on one field and order or filter on another (single-field indexes are
# automatic).

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

# History per user: batches where owner == X order by created_at desc.
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

# Running or pending batches (admin view, relay): state == X order by created_at desc.
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

# The relay's "my active batches": owner == X and state in [pending, running].
resource "google_firestore_index" "batches_by_owner_state" {
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
}

# The relay's "my recent batches": owner == X and created_at >= T.
resource "google_firestore_index" "batches_by_owner_created_asc" {
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
    order      = "ASCENDING"
  }
}

# The relay's owner feed (subscribe_all): owner == X and finished_at >= T.
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

# History filtered by state: owner == X and state == S order by created_at desc.
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

# Node results of one batch by outcome, in position order (failed nodes for
# retry and for the UI): batches/{id}/nodes where state == X order by position.
resource "google_firestore_index" "nodes_by_state" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "nodes"
  query_scope = "COLLECTION"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "position"
    order      = "ASCENDING"
  }
}
