/// An `authorization.k8s.io/v1` SelfSubjectAccessReview: asks the API server whether the
/// caller's own service account may do one thing.
public struct SelfSubjectAccessReview: Sendable, Equatable, Codable {
    /// What is asked about: a verb on a resource, optionally one object by name.
    public struct ResourceAttributes: Sendable, Hashable, Codable {
        public var namespace: String
        public var verb: String
        public var resource: String
        /// Absent for `create`, which RBAC cannot scope by name.
        public var name: String?

        public init(namespace: String, verb: String, resource: String, name: String? = nil) {
            self.namespace = namespace
            self.verb = verb
            self.resource = resource
            self.name = name
        }
    }

    public struct Spec: Sendable, Equatable, Codable {
        public var resourceAttributes: ResourceAttributes
    }

    /// The answer.
    public struct Status: Sendable, Equatable, Codable {
        public var allowed: Bool
        public var denied: Bool?
        public var reason: String?
    }

    public var apiVersion = "authorization.k8s.io/v1"
    public var kind = "SelfSubjectAccessReview"
    public var spec: Spec
    public var status: Status?

    public init(_ attributes: ResourceAttributes) {
        spec = Spec(resourceAttributes: attributes)
    }
}
