import { CodedUserError, errnoCode } from "../../user-error.ts";

export { errnoCode };

/** What went wrong while attaching or releasing a network; stable strings for callers and tests. */
export type NetworkErrorCode =
  /** Bad options (an id with a slash, a malformed subnet...). */
  | "INVALID_OPTIONS"
  /** A CNI plugin binary is not in the CNI path. */
  | "PLUGIN_NOT_FOUND"
  /** A CNI plugin ran and reported an error (or printed something that is not a result). */
  | "PLUGIN_FAILED"
  /** The network namespace could not be created or removed. */
  | "NETNS_FAILED"
  /** An attachment with this id exists already and its owner is running. */
  | "ALREADY_ATTACHED"
  /** The bridge asked for is used by another state root's running builds, or has another subnet. */
  | "BRIDGE_IN_USE"
  /** No subnet is free of the host's routes (or the one asked for clashes with them). */
  | "SUBNET_UNAVAILABLE"
  /** Another process held the network lock for too long. */
  | "LOCK_TIMEOUT"
  /** A plugin failed while removing an attachment (the record is kept for a later clean-up). */
  | "RELEASE_FAILED";

export class NetworkError extends CodedUserError<NetworkErrorCode> {
  override readonly name = "NetworkError";
}

