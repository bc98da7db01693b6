/**
 * The ledger's entries, typed per kind (ledger format 2).
 *
 * An entry records one thing espm created — a node's classification in the ENC or a
 * certificate at the CA — with what the platform asked for (`node` / `certificate`), the
 * backend's *receipt* (what the adapter needs later to remove exactly what it made: nothing
 * for the PE 2.x console's rake tasks, a group id and pins for the Node Classifier, the
 * fingerprint and public key for a CA), and follow-up steps still owed after the backend
 * object is gone (`pending_steps`, e.g. a PuppetDB deactivation).
 *
 * Source of truth: docs/design.md ("Ownership").
 *
 * @packageDocumentation
 */

/** A JSON value, as a receipt may hold it. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/**
 * What a backend adapter returns from a create or an issue, and takes back for the delete or
 * revoke: a JSON object only that adapter interprets. Opaque to the ledger and the services;
 * stored as is. `{}` when the backend needs nothing (the rake tasks find a node by name).
 */
export type Receipt = { readonly [key: string]: JsonValue };

/** What an entry records: a node's classification or a certificate. */
export type EntryKind = 'node' | 'certificate';
/** Kinds, for iteration and CLI validation. */
export const ENTRY_KINDS: readonly EntryKind[] = ['node', 'certificate'];

/**
 * `pending`: a create is under way (write-ahead). `present`: created by espm and there.
 * `uncertain`: a create was interrupted; espm may or may not have created it.
 * `deleting`: espm created it and a delete/revoke is under way or was interrupted (write-ahead):
 * ownership is certain, existence is not, so deleting again is safe.
 * `deleted`: the backend object is gone; only {@link PendingStep}s are still owed (the entry is
 * removed when the last one completes).
 */
export type EntryState = 'pending' | 'present' | 'uncertain' | 'deleting' | 'deleted';
/** Every state, in the order `espm ledger list` and `GET /v1/status` count them. */
export const ENTRY_STATES: readonly EntryState[] = ['pending', 'present', 'uncertain', 'deleting', 'deleted'];

/** A follow-up owed for a name after its backend object was deleted: its deactivation in PuppetDB (src/service/puppetdb.ts). */
export type PendingStep = 'puppetdb_deactivation';
/** Every pending step the ledger knows. */
export const PENDING_STEPS: readonly PendingStep[] = ['puppetdb_deactivation'];

/** What the platform asked for a node (`POST /v1/nodes`), as the API answers it. */
export interface NodeRecord {
  groups: string[];
  classes: string[];
  /** Parameter name → value (top-scope variables). */
  parameters: Record<string, string>;
}

/** What the platform asked for a certificate, and what the CA signed (known once issued). */
export interface CertificateRecord {
  dns_alt_names: string[];
  /** Trusted extensions asked for, as the platform named them (short name or OID → value); absent when none. */
  extensions?: Record<string, string>;
  /** SHA-256 of the DER certificate, colon-separated upper-case hex; set once issued. */
  fingerprint_sha256?: string;
  /** Serial number, upper-case hex; set once issued. */
  serial?: string;
  /** Expiry, ISO 8601; set once issued. */
  not_after?: string;
  /** `token`: the node signs its own CSR with a one-time challenge (src/service/tokens.ts); absent = pre-signed. */
  signing?: 'token';
  /** The signing token of a `token` certificate (never the challenge password itself). */
  token?: TokenRecord;
}

/**
 * A signing token espm handed out (`"signing": "token"`): what a CSR must present and ask for
 * to be signed by the master's policy executable (docs/design.md, "Certificates: trusted
 * extensions, and a signing mode where the key never leaves the node").
 */
export interface TokenRecord {
  /** SHA-256 of the challenge password, lower-case hex (the password is never stored). */
  challenge_sha256: string;
  /** When the token stops being accepted, ISO 8601. */
  expires_at: string;
  /** The trusted extensions the CSR must ask for, dotted OID → value (exactly these). */
  extensions: Record<string, string>;
  /** SHA-256 (colon hex) of the public key of the CSR espm approved; set at the one use. */
  approved_public_key_sha256?: string;
  /** When espm approved that CSR, ISO 8601. */
  approved_at?: string;
}

/** What every entry has. */
interface EntryBase {
  /** Node name or certname. */
  name: string;
  state: EntryState;
  /** When the entry was first written (ISO 8601). */
  created_at: string;
  /** When it last changed (ISO 8601). */
  updated_at: string;
  /** The backend's receipt; `null` until the create succeeded (or for an adopted entry). */
  receipt: Receipt | null;
  /** Follow-ups still owed, oldest first; empty for most entries. */
  pending_steps: PendingStep[];
}

/** A node's classification espm created. */
export interface NodeEntry extends EntryBase {
  kind: 'node';
  node: NodeRecord;
}

/** A certificate espm issued. */
export interface CertificateEntry extends EntryBase {
  kind: 'certificate';
  certificate: CertificateRecord;
}

/** One record of the ledger. */
export type LedgerEntry = NodeEntry | CertificateEntry;

/** The entry type of a kind. */
export type EntryOf<K extends EntryKind> = K extends 'node' ? NodeEntry : CertificateEntry;
/** The record type of a kind. */
export type RecordOf<K extends EntryKind> = K extends 'node' ? NodeRecord : CertificateRecord;
