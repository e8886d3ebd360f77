/// What the service account may do with the state Secret and with Events, as
/// SelfSubjectAccessReviews answered at start, and what is missing.
///
/// - `get` on the Secret: loading the state; required.
/// - `patch` on the Secret: writes (one JSON patch per batch); `update` is the fallback (read,
///   then replace with `resourceVersion`), so one of the two is required.
/// - `create` on secrets (RBAC cannot scope it by name): required only while the Secret does
///   not exist.
/// - `get`, `create`, `patch` on events: optional, for `kubectl describe pod`.
public struct SecretPermissions: Sendable, Equatable {
    public var get: Bool
    public var update: Bool
    public var patch: Bool
    public var create: Bool
    /// The three event verbs, or nil when Events are not wanted (no `POD_NAME`/`POD_UID`).
    public var events: (get: Bool, create: Bool, patch: Bool)?

    public init(
        get: Bool, update: Bool, patch: Bool, create: Bool, events: (get: Bool, create: Bool, patch: Bool)? = nil
    ) {
        self.get = get
        self.update = update
        self.patch = patch
        self.create = create
        self.events = events
    }

    public static func == (lhs: SecretPermissions, rhs: SecretPermissions) -> Bool {
        lhs.get == rhs.get && lhs.update == rhs.update && lhs.patch == rhs.patch && lhs.create == rhs.create
            && lhs.events?.get == rhs.events?.get && lhs.events?.create == rhs.events?.create
            && lhs.events?.patch == rhs.events?.patch
    }

    /// Whether Events can be recorded.
    public var eventsAllowed: Bool {
        guard let events else { return false }
        return events.get && events.create && events.patch
    }

    /// The missing permissions: those without which tsidp cannot run, and the others.
    public struct Findings: Sendable, Equatable {
        /// Each a phrase such as `get on secrets "tsidp" (to load the state)`.
        public var required: [String]
        public var optional: [String]
    }

    /// What is missing, given whether the Secret exists (nil when that is unknown because it could
    /// not be read).
    public func findings(secret name: String, exists: Bool?) -> Findings {
        var required: [String] = []
        var optional: [String] = []
        let object = "secrets \"\(name)\""
        if !get { required.append("get on \(object) (to load the state)") }
        switch (patch, update) {
        case (false, false):
            required.append("patch and update on \(object) (to write: patch is preferred, update is its fallback)")
        case (false, true):
            optional.append("patch on \(object) (writes fall back to update: a read, then a replace)")
        case (true, false):
            optional.append("update on \(object) (used only if a patch is refused)")
        case (true, true):
            break
        }
        if !create {
            switch exists {
            case false?: required.append("create on secrets (the Secret does not exist yet)")
            case nil: required.append("create on secrets (needed if the Secret does not exist yet)")
            case true?: optional.append("create on secrets (needed only if the Secret is deleted)")
            }
        }
        if let events {
            let missing = [("get", events.get), ("create", events.create), ("patch", events.patch)]
                .filter { !$0.1 }.map(\.0)
            if !missing.isEmpty {
                optional.append("\(missing.joined(separator: ", ")) on events (Events are off)")
            }
        }
        return Findings(required: required, optional: optional)
    }

    /// The message of a start refused for `findings`: every missing permission at once, the
    /// optional ones marked as such.
    public static func refusal(_ findings: Findings, secret: String, namespace: String) -> String {
        var text =
            "the service account may not use Secret \(namespace)/\(secret): missing "
            + findings.required.joined(separator: "; ")
        if !findings.optional.isEmpty {
            text += "; also missing, optional: " + findings.optional.joined(separator: "; ")
        }
        return text + ". Grant them in the Role bound to the pod's service account (see docs/kubernetes.md)"
    }
}
