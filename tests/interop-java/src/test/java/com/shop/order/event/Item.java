package com.shop.order.event;

public record Item(String productId, int quantity) {}
