// swift-tools-version:6.2
import PackageDescription

// The smallest Hummingbird server, the baseline of tsidp's per-request HTTP cost in
// scripts/benchmark: one route answering two bytes, no middleware, logging at warning.
let package = Package(
    name: "hello-world",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1")
    ],
    targets: [
        .executableTarget(
            name: "hello-world",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird")]
        )
    ]
)
